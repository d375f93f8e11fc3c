"""Shape arithmetic of parameter-efficient end-to-end TAL with VideoMAE
ViTs: what ``full`` fine-tuning, ``adatad`` (frozen backbone, temporal
adapters, checkpointed blocks) and ``reversible+adapters`` would need on a
GPU, counted from the shapes (float32 throughout, batch 1, SDPA attention:
no ``N x N`` matrix; AMP would roughly halve the activation terms).

Per block, plain training keeps ``8 + 2 r`` token tensors of ``N x C``
(two LayerNorm inputs and outputs, q/k/v, the attention output, the MLP
hidden ``r C`` before and after GELU); a temporal adapter adds about one
(four ``N x C / 4`` tensors). ``adatad`` keeps one block input per block
plus one block's recompute and its gradients; ``reversible+adapters``
keeps the two streams and their gradients, the final norm's input and
output (pieces of the recompute are small). Weights, gradients of the
trainable parameters and AdamW's two moments are added.
"""
from typing import Dict, List

# name -> (depth, embed_dims, mlp_ratio): VideoMAE ViT-B/L, VideoMAE V2-g
ARCHS = {'ViT-B': (12, 768, 4.0), 'ViT-L': (24, 1024, 4.0),
         'ViT-g': (40, 1408, 48 / 11)}
SETTINGS = ((768, 160), (1536, 224))  # (frames, crop)
VARIANTS = ('full', 'adatad', 'reversible+adapters')
GIB = 2**30


def backbone_params(depth: int, dims: int, ratio: float) -> int:
    hidden = int(dims * ratio)
    block = 4 * dims * dims + 2 * dims * hidden + 9 * dims + hidden
    return depth * block + 3 * 2 * 16 * 16 * dims + dims + 2 * dims


def adapter_params(depth: int, dims: int, reduction: int = 4,
                   kernel: int = 3) -> int:
    d = dims // reduction
    return depth * (2 * dims * d + d * d + d * kernel + 3 * d + dims + 1)


def estimate(arch: str, frames: int, crop: int, variant: str,
             depth=None) -> Dict:
    """Bytes of one training step of ``variant`` (see the module doc);
    ``depth`` overrides the architecture's."""
    arch_depth, dims, ratio = ARCHS[arch]
    depth = depth or arch_depth
    tokens = frames // 2 * (crop // 16)**2
    nc = tokens * dims * 4  # bytes of one N x C float32 tensor
    per_block = 8 + 2 * ratio
    P, A = backbone_params(depth, dims, ratio), adapter_params(depth, dims)
    if variant == 'full':
        acts, trainable = depth * per_block * nc, P
    elif variant == 'adatad':
        acts = depth * nc + (per_block + 1 + 3) * nc
        trainable = A
    else:
        acts, trainable = 6 * nc, A
    weights = 4 * (P + (A if variant != 'full' else 0))
    video = 3 * frames * crop * crop * 4
    grads, adam = 4 * trainable, 8 * trainable
    return dict(arch=arch, frames=frames, crop=crop, variant=variant,
                trainable=trainable, weights=weights, acts=acts + video,
                grads=grads, adam=adam,
                total=weights + acts + video + grads + adam)


def arithmetic_rows() -> List[Dict]:
    return [estimate(a, f, c, v) for a in ARCHS for f, c in SETTINGS
            for v in VARIANTS]


def arithmetic_table(rows=None) -> str:
    rows = rows or arithmetic_rows()
    lines = ['| backbone | frames x crop | variant | trainable params | '
             'activations GiB | weights GiB | grads GiB | AdamW state GiB | '
             'total GiB |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(
            f'| {r["arch"]} | {r["frames"]}x{r["crop"]} | {r["variant"]} | '
            f'{r["trainable"] / 1e6:.1f} M | {r["acts"] / GIB:.1f} | '
            f'{r["weights"] / GIB:.1f} | {r["grads"] / GIB:.2f} | '
            f'{r["adam"] / GIB:.2f} | {r["total"] / GIB:.1f} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    print(arithmetic_table())
