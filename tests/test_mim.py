"""`mim train mmaction2 <config>` runs with the plugin switched on from the
config."""
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np

from .conftest import REPO


def write_video(path, frames=12, size=40, seed=0):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10,
                             (size, size))
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    writer.release()


def test_mim_train_with_custom_imports(tmp_path):
    videos = tmp_path / 'videos'
    videos.mkdir()
    lines = []
    for i in range(4):
        write_video(videos / f'v{i}.mp4', seed=i)
        lines.append(f'v{i}.mp4 {i % 2}')
    (tmp_path / 'train.txt').write_text('\n'.join(lines) + '\n')
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    work_dir = tmp_path / 'work'
    result = subprocess.run(
        [mim, 'train', 'mmaction2',
         osp.join(REPO, 'tests', 'data', 'tiny_recognizer_config.py'),
         '--gpus', '0', '--work-dir', str(work_dir), '--cfg-options',
         f'train_dataloader.dataset.ann_file={tmp_path / "train.txt"}',
         f'train_dataloader.dataset.data_prefix.video={videos}'],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 0, \
        result.stdout[-3000:] + result.stderr[-3000:]
    assert (work_dir / 'epoch_1.pth').exists()
