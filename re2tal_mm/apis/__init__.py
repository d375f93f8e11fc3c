from .inference import init_localizer, localize_video, plot_timeline

__all__ = ['init_localizer', 'localize_video', 'plot_timeline']
