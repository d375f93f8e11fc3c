"""ActivityNet-style JSON files of other datasets: writing one with its
class list, and the HACS Segments / FineAction releases."""
import json
import os
import os.path as osp
from collections import Counter
from typing import List, Mapping, Optional


def dump_tal_json(database: Mapping, path: str, version: str,
                  classes: Optional[List[str]] = None) -> str:
    """Write ``database`` as the ActivityNet-style JSON ``TALDataset``
    reads, with ``classes`` (label index order) when given; the folder is
    created. Returns a one-line summary (videos per subset)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    data = dict(version=version, database=database)
    if classes is not None:
        data['classes'] = list(classes)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    counts = Counter(str(v.get('subset')) for v in database.values())
    n_cls = '' if classes is None else f', {len(classes)} classes'
    return f'wrote {path}: {dict(counts)} videos{n_cls}'
