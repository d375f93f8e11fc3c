"""Installation of re2tal-mm, an OpenMMLab (MMAction2) plugin for Re2TAL.

Loose version ranges live here; the exact versions verified together are in
``requirements/constraints.txt`` (used by ``make`` and CI).

Like MMAction2, the configs are shipped inside the package under
``re2tal_mm/.mim/configs`` so that ``mim`` finds them in an installed wheel.
"""
import os
import os.path as osp
import shutil
import sys
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    """Requirement lines of ``requirements/<name>.txt`` (comments dropped)."""
    with open(osp.join(HERE, 'requirements', name + '.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def get_version():
    namespace = {}
    with open(osp.join(HERE, 're2tal_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def add_mim_extension():
    """Copy (wheel) or link (editable) ``configs`` into ``re2tal_mm/.mim``.

    This is the layout ``mim`` expects of an OpenMMLab package, the same that
    MMAction2's own setup.py builds.
    """
    if 'develop' in sys.argv or any(
            a.startswith('editable') for a in sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'bdist', 'install', 'build'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 're2tal_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ['configs']:
        src, dst = osp.join(HERE, name), osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if not osp.exists(src):
            continue
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        else:
            shutil.copytree(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='re2tal-mm',
        version=get_version(),
        description='Re2TAL for MMAction2: reversible rewiring of pretrained '
        'video backbones and end-to-end temporal action localization',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        python_requires='>=3.8',
        packages=find_packages(
            exclude=('tests', 'tests.*', 'tools', 'configs')),
        include_package_data=True,
        package_data={'re2tal_mm': ['.mim/configs/**/*', '.mim/configs/*']},
        install_requires=read_requirements('runtime'),
        extras_require={'tests': read_requirements('tests')},
        zip_safe=False,
    )
