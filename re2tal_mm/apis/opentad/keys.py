"""Key mapping between OpenTAD state dicts and ours.

Every kind module of :mod:`re2tal_mm.apis.opentad` maps OpenTAD's keys of its
part (a backbone's own keys, or a detector's ``projection.*`` / ``neck.*`` /
``rpn_head.*``) to the keys of our module with :func:`map_keys`: a tensor that
no rule places stops the conversion, named, instead of being dropped.
"""
import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from torch import Tensor

#: a rule: ``(regex, replacement)`` for :func:`re.sub`, or a callable that
#: returns the new key or None when it does not apply
Rule = Tuple[str, str]


class UnplacedTensorError(KeyError):
    """An OpenTAD tensor that no mapping rule places in our model."""

    def __init__(self, key: str, where: str = ''):
        self.key = key
        super().__init__(
            f'OpenTAD tensor {key!r} has no place in our {where or "model"}: '
            'the checkpoint is of another architecture or a newer OpenTAD '
            'layout; nothing was converted')

    def __str__(self):
        return self.args[0]


def map_keys(state_dict: Mapping[str, Tensor], rules: Iterable[Rule],
             where: str = '', drop: Iterable[str] = (),
             transform: Optional[Callable[[str, Tensor], Tensor]] = None
             ) -> Tuple[Dict[str, Tensor], List[str]]:
    """Rename every key of ``state_dict`` by the first rule that matches.

    Args:
        state_dict (Mapping[str, Tensor]): OpenTAD tensors.
        rules (Iterable[tuple]): ``(pattern, replacement)`` pairs; a pattern
            must match the whole key (``re.fullmatch``).
        where (str): What we map into, for the error message. Defaults to
            ''.
        drop (Iterable[str]): Patterns (full match) of keys that have no
            counterpart on purpose (e.g. an unused ``fc_norm``): returned as
            dropped. Defaults to ().
        transform (callable, optional): ``(our_key, tensor) -> tensor`` for
            tensors stored in another layout. Defaults to None.

    Returns:
        tuple[dict, list]: Our state dict and the dropped OpenTAD keys.

    Raises:
        UnplacedTensorError: A key that neither a rule nor ``drop`` matches.
    """
    rules = [(re.compile(p), r) for p, r in rules]
    drop = [re.compile(p) for p in drop]
    ours, dropped = {}, []
    for key, value in state_dict.items():
        for pattern, repl in rules:
            if pattern.fullmatch(key):
                new = pattern.sub(repl, key)
                ours[new] = transform(new, value) if transform else value
                break
        else:
            if any(p.fullmatch(key) for p in drop):
                dropped.append(key)
                continue
            raise UnplacedTensorError(key, where)
    return ours, dropped
