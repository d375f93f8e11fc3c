"""Plot the output of :func:`~re2tal_mm.apis.localize_video`.

Matplotlib drawing only (imported on call, ``Agg`` backend): a timeline of
the detected segments of one video, with its ground truth if given.
"""
from typing import List, Optional, Sequence


def timeline_lanes(segments: Sequence[Sequence[float]]) -> List[int]:
    """A lane per segment such that segments of one lane do not overlap
    (greedy interval partitioning in order of start: the fewest lanes).

    Args:
        segments (Sequence): ``[start, end]`` pairs.

    Returns:
        list[int]: The lane of each segment, in input order.
    """
    lanes, ends = [0] * len(segments), []
    for i in sorted(range(len(segments)), key=lambda k: segments[k][0]):
        start, end = segments[i]
        free = next((k for k, e in enumerate(ends) if e <= start), None)
        if free is None:
            free = len(ends)
            ends.append(end)
        ends[free] = end
        lanes[i] = free
    return lanes


def plot_timeline(result: dict, out_file: str,
                  classes: Optional[Sequence[str]] = None,
                  max_segments: int = 100,
                  ground_truth: Optional[Sequence[dict]] = None) -> str:
    """Timeline of ``result`` (from :func:`localize_video`) as an image.

    One row per class, one bar per detected segment coloured by its score and
    labelled with it, the video's duration on the x axis. Overlapping
    detections of a class go to separate lanes of its row
    (:func:`timeline_lanes`), so neither bars nor labels cover each other.
    With ``ground_truth`` (ActivityNet annotations: ``[{"segment": [s, e],
    "label": name}, ...]``) the true segments are drawn as red outlines over
    their whole class row.

    Args:
        result (dict): The output of :func:`localize_video`.
        out_file (str): Image file to write.
        classes (Sequence[str], optional): Row order. Defaults to None (the
            detected labels, sorted).
        max_segments (int): The best this many detections are drawn.
            Defaults to 100.
        ground_truth (Sequence[dict], optional): Defaults to None.

    Returns:
        str: ``out_file``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    dets = sorted(result['results'], key=lambda d: -d['score'])[:max_segments]
    names = list(classes) if classes else sorted({d['label'] for d in dets})
    rows = {n: i for i, n in enumerate(names)}
    for d in list(dets) + list(ground_truth or []):
        rows.setdefault(d['label'], len(rows))
    cmap, norm = matplotlib.colormaps['viridis'], colors.Normalize(0, 1)
    fig, ax = plt.subplots(figsize=(10, 1 + 0.5 * max(1, len(rows))))
    for g in ground_truth or []:
        s, e = g['segment']
        ax.barh(rows[g['label']], e - s, left=s, height=0.9, fill=False,
                edgecolor='red', linewidth=1.5, label='ground truth')
    by_class = {}
    for d in dets:
        by_class.setdefault(d['label'], []).append(d)
    for label, group in by_class.items():
        lanes = timeline_lanes([d['segment'] for d in group])
        height = 0.8 / (max(lanes) + 1)
        for d, lane in zip(group, lanes):
            s, e = d['segment']
            y = rows[label] - 0.4 + (lane + 0.5) * height  # lane 0 on top
            ax.barh(y, e - s, left=s, height=0.9 * height,
                    color=cmap(norm(d['score'])), edgecolor='black',
                    linewidth=0.5)
            ax.text(s, y, f'{d["score"]:.2f}', va='center',
                    fontsize=max(4, min(7, 40 * height)))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(list(rows))
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.invert_yaxis()
    ax.set_xlim(0, result['duration'])
    ax.set_xlabel('time (s)')
    ax.set_title(f'{result["video_id"]}: {len(dets)} detected segment(s)')
    if ground_truth:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[:1], labels[:1], loc='upper right', fontsize=8)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                 label='score')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file
