"""The fast kernels: K nets of one architecture trained as stacked arrays, whole chunks of
steps in compiled code (numba), every layer's forward and backward fused into a few loops.

They compute what ``bnviz.functional`` and ``bnviz.nn`` compute (the tests hold them to it:
float64 to ~1e-12, float32 to rounding), but on flat arrays: run k's parameters are row k of
one (K, P) array laid out by ``Layout``, its activations and caches row k of one (K, B)
buffer. The matrix products go to BLAS (numba's np.dot); everything else is loops that touch
each value once. A step's Python overhead is gone: ``steps`` runs n steps of all K nets in one
call, deciding divergence on the way (the rule of ``bnviz.train.Run.accept``).

Random draws (noise, dropout) come from the same counter-based streams as the reference
layers (``functional.uniform_pairs``), so both engines draw the same numbers.

Compiled code is cached on disk (``NUMBA_CACHE_DIR``, else next to this file); ``warm_up``
compiles it before a student waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from bnviz import functional as F

Array = np.ndarray

ACT_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "linear": 3}
NONE, BATCH, GROUP = 0, 1, 2
TRAIN, PROBE, EVAL = 0, 1, 2  # the forward's modes, see _forward

# Columns of the per-hidden-layer table: sizes, parameter offsets (-1: absent), running
# statistics, buffers of the layer's stages and the layer's options.
(C_IN, C_OUT, C_W, C_B, C_GAMMA, C_BETA, C_RM, C_RV, C_Z, C_XH, C_N, C_NS, C_SC, C_A,
 C_MK, C_DO, C_BO, C_D, C_MU, C_VAR, C_INV, C_GROUPS, C_NOISE, C_DROP) = range(24)  # fmt: skip
N_COLS = 24
# The output layer's row: input width, classes, weight, bias, input buffer, logits, batch
(O_IN, O_C, O_W, O_B, O_XB, O_LOGITS, O_NIN) = range(7)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
# Acklam's coefficients as scalars: constants in a loop vectorize, a constant array does not
_QA0, _QA1, _QA2, _QA3, _QA4, _QA5 = F._ACKLAM_A
_QB0, _QB1, _QB2, _QB3, _QB4 = F._ACKLAM_B
_QC0, _QC1, _QC2, _QC3, _QC4, _QC5 = F._ACKLAM_C
_QD0, _QD1, _QD2, _QD3 = F._ACKLAM_D


@dataclass(frozen=True)
class Layout:
    """Where every parameter, statistic and buffer of one net sits in its rows, and the net's
    options as codes (the kernels' view of an ``MLP``)."""

    keys: tuple[str, ...]  # parameter keys in row order (the reference MLP's)
    offsets: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    n_params: int
    running: dict[str, tuple[int, int]]  # BN layer -> offsets of running mean and var
    n_running: int
    hidden: Array  # (L, N_COLS) int64
    output: Array  # (O_NIN,) int64
    n_buffer: int
    act: int
    norm: int
    after: bool
    eps: float
    momentum: float  # -1: cumulative average (momentum None)
    noise: tuple[float, float, float, float]  # n_mu, n_sigma, r_mu, r_sigma
    dropout: float
    batch: int

    @classmethod
    def of(cls, model, batch: int) -> Layout:
        """The layout of a reference ``bnviz.nn.MLP`` trained on batches of ``batch``."""
        cfg = model.config
        keys = tuple(model.params)
        offsets, shapes, off = {}, {}, 0
        for key in keys:
            offsets[key], shapes[key] = off, model.params[key].shape
            off += model.params[key].size
        running, r_off = {}, 0
        for name, bn in model.norm_layers:
            running[name] = (r_off, r_off + bn.num_features)
            r_off += 2 * bn.num_features
        norm = {"none": NONE, "batch": BATCH, "layer": GROUP, "group": GROUP}[cfg["norm"]]
        groups = 1 if cfg["norm"] == "layer" else cfg["groups"]
        m, b_off = batch, 0
        hidden = np.full((model.n_hidden, N_COLS), -1, dtype=np.int64)
        for i in range(1, model.n_hidden + 1):
            row, names = hidden[i - 1], model.blocks[i - 1]
            row[C_IN], row[C_OUT] = model.sizes[i - 1], model.sizes[i]
            d = model.sizes[i]
            row[C_W] = offsets[f"fc{i}.weight"]
            row[C_B] = offsets.get(f"fc{i}.bias", -1)
            norm_name = next((n for n in names if n[:2] in ("bn", "ln", "gn")), None)
            if norm_name:
                row[C_GAMMA] = offsets[f"{norm_name}.gamma"]
                row[C_BETA] = offsets[f"{norm_name}.beta"]
            if norm_name in running:
                row[C_RM], row[C_RV] = running[norm_name]
            for col in (C_Z, C_XH, C_N, C_NS, C_SC, C_A, C_MK, C_DO, C_D):
                row[col], b_off = b_off, b_off + m * d
            n_stats = d if norm == BATCH else m * groups
            for col in (C_MU, C_VAR, C_INV):
                row[col], b_off = b_off, b_off + n_stats
            row[C_GROUPS] = groups
            row[C_NOISE] = int(any(n.startswith("noise") for n in names))
            row[C_DROP] = int(any(n.startswith("drop") for n in names))
            stages = [C_Z]  # where the block's output ends up: the forward's last stage
            if norm == NONE:
                stages += [C_NS] * row[C_NOISE] + [C_A]
            elif cfg["placement"] == "before":
                stages += [C_N] + [C_NS] * row[C_NOISE] + [C_A]
            else:
                stages += [C_A, C_N] + [C_NS] * row[C_NOISE]
            stages += [C_DO] * row[C_DROP]
            row[C_BO] = row[stages[-1]]
        n_out = model.n_hidden + 1
        output = np.array(
            [
                model.sizes[-2],
                model.sizes[-1],
                offsets[f"fc{n_out}.weight"],
                offsets[f"fc{n_out}.bias"],
                b_off,
                b_off + m * model.sizes[0],
                model.sizes[0],
            ],
            dtype=np.int64,
        )
        b_off += m * model.sizes[0] + m * model.sizes[-1]
        strength = cfg["noise"]
        noise = F.Noise(strength)
        return cls(
            keys=keys,
            offsets=offsets,
            shapes=shapes,
            n_params=off,
            running=running,
            n_running=r_off,
            hidden=hidden,
            output=output,
            n_buffer=b_off,
            act=ACT_CODES[cfg["activation"]],
            norm=norm,
            after=cfg["placement"] == "after",
            eps=float(cfg["eps"]),
            momentum=-1.0 if cfg["momentum"] is None else float(cfg["momentum"]),
            noise=(noise.n_mu, noise.n_sigma, noise.r_mu, noise.r_sigma),
            dropout=float(cfg["dropout"]),
            batch=m,
        )

    def pack(self, model) -> Array:
        """A net's parameters as one row."""
        return np.concatenate([model.params[k].ravel() for k in self.keys])

    def unpack(self, row: Array, model) -> None:
        """A row back into a net's parameter arrays."""
        for key in self.keys:
            off, shape = self.offsets[key], self.shapes[key]
            model.params[key][...] = row[off : off + math.prod(shape)].reshape(shape)


def stream_keys(model, layout: Layout) -> tuple[Array, Array]:
    """Per hidden layer, the keys of the net's noise streams (L, 2) and dropout stream (L,)."""
    n = layout.hidden.shape[0]
    noise, drop = np.zeros((n, 2), dtype=np.uint64), np.zeros(n, dtype=np.uint64)
    for name, layer in model.named_layers:
        i = int("".join(ch for ch in name if ch.isdigit())) - 1
        if name.startswith("noise"):
            noise[i] = layer.keys
        elif name.startswith("drop"):
            drop[i] = layer.key
    return noise, drop


# --------------------------------------------------------------------------- random draws


@nb.njit(cache=True, inline="always", error_model="numpy")
def _mix(z):
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _pair(key, index):
    """Draw ``index`` of the stream ``key`` as two uniforms in [0, 1), as ``uniform_pairs``."""
    h = _mix(np.uint64(index) * _GOLDEN + key)
    return float(h >> _S32) * 2.0**-32, float(h & _LOW32) * 2.0**-32


@nb.njit(cache=True, inline="always", error_model="numpy")
def _normal_quantile(u):
    """``functional.normal_quantile`` for one uniform."""
    lo = 2.0**-33
    if u < lo:
        u = lo
    elif u > 1.0 - lo:
        u = 1.0 - lo
    if u < 0.02425 or u > 1.0 - 0.02425:
        p = u if u < 0.5 else 1.0 - u
        t = math.sqrt(-2.0 * math.log(p))
        x = (((((_QC0 * t + _QC1) * t + _QC2) * t + _QC3) * t + _QC4) * t + _QC5) / (
            (((_QD0 * t + _QD1) * t + _QD2) * t + _QD3) * t + 1.0
        )
        return x if u < 0.5 else -x
    return _central_quantile(u)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _central_quantile(u):
    """Acklam's central formula, exact for 0.02425 <= u <= 0.97575."""
    q = u - 0.5
    r = q * q
    return (
        (((((_QA0 * r + _QA1) * r + _QA2) * r + _QA3) * r + _QA4) * r + _QA5)
        * q
        / (((((_QB0 * r + _QB1) * r + _QB2) * r + _QB3) * r + _QB4) * r + 1.0)
    )


# --------------------------------------------------------------------------- tanh in float32
# libm's tanh costs ~20 ns a value and does not vectorize; a float32 net calls it 18,000 times
# a step. This rational approximation (Eigen's ptanh_float: odd degree-13 numerator, even
# degree-6 denominator, |x| clamped to 7.9053, where tanh rounds to +-1 in float32) is within a
# few float32 ulps of tanh and vectorizes. float64 nets keep libm's tanh.

_TANH_CLAMP = np.float32(7.90531110763549805)
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = (
    np.float32(v)
    for v in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
              5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
              -2.76076847742355e-16)
)  # fmt: skip
_B0, _B2, _B4, _B6 = (
    np.float32(v)
    for v in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
              1.19825839466702e-06)
)  # fmt: skip


@nb.njit(cache=True, inline="always", error_model="numpy")
def _tanh32(x):
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p / q


# --------------------------------------------------------------------------- layers


@nb.njit(cache=True, inline="always", error_model="numpy")
def _view(a, k, off, rows, cols):
    return a[k, off : off + rows * cols].reshape((rows, cols))


@nb.njit(cache=True, inline="always", error_model="numpy")
def _vec(a, k, off, n):
    return a[k, off : off + n]


@nb.njit(cache=True, error_model="numpy")
def _activate(code, z, out):
    m, d = z.shape
    half = z.dtype.type(0.5)
    single = z.itemsize == 4
    if code == 0 and single:
        for i in range(m):
            for j in range(d):
                out[i, j] = half * _tanh32(half * z[i, j]) + half
    elif code == 0:
        for i in range(m):
            for j in range(d):
                out[i, j] = half * math.tanh(half * z[i, j]) + half
    elif code == 1 and single:
        for i in range(m):
            for j in range(d):
                out[i, j] = _tanh32(z[i, j])
    elif code == 1:
        for i in range(m):
            for j in range(d):
                out[i, j] = math.tanh(z[i, j])
    elif code == 2:
        for i in range(m):
            for j in range(d):
                out[i, j] = max(z[i, j], z.dtype.type(0))
    else:
        out[...] = z


@nb.njit(cache=True, error_model="numpy")
def _activation_grad(code, a, d):
    """dL/dz in place on d, from the activation's output a."""
    m, n = a.shape
    one = a.dtype.type(1)
    if code == 0:
        for i in range(m):
            for j in range(n):
                d[i, j] = d[i, j] * a[i, j] * (one - a[i, j])
    elif code == 1:
        for i in range(m):
            for j in range(n):
                d[i, j] = d[i, j] * (one - a[i, j] * a[i, j])
    elif code == 2:
        for i in range(m):
            for j in range(n):
                if not a[i, j] > 0:
                    d[i, j] = 0


@nb.njit(cache=True, error_model="numpy")
def _batchnorm(x, gamma, beta, eps, xh, y, mu, var, inv):
    """BN's steps 1-4 over the batch, per unit, as ``functional.batchnorm_forward``."""
    m, d = x.shape
    inv_m = x.dtype.type(1.0 / m)
    for j in range(d):
        mu[j] = 0
        var[j] = 0
    for i in range(m):
        for j in range(d):
            mu[j] += x[i, j]
    for j in range(d):
        mu[j] *= inv_m
    for i in range(m):
        for j in range(d):
            c = x[i, j] - mu[j]
            xh[i, j] = c
            var[j] += c * c
    for j in range(d):
        var[j] *= inv_m
        inv[j] = 1.0 / math.sqrt(var[j] + eps)
    for i in range(m):
        for j in range(d):
            xh[i, j] *= inv[j]
            y[i, j] = gamma[j] * xh[i, j] + beta[j]


@nb.njit(cache=True, error_model="numpy")
def _batchnorm_backward(d, xh, gamma, inv, dgamma, dbeta):
    """The compact BN gradient, in place on d (dL/dy in, dL/dx out)."""
    m, n = d.shape
    for j in range(n):
        dgamma[j] = 0
        dbeta[j] = 0
    for i in range(m):
        for j in range(n):
            dbeta[j] += d[i, j]
            dgamma[j] += d[i, j] * xh[i, j]
    mf = d.dtype.type(m)
    inv_m = d.dtype.type(1.0 / m)
    for i in range(m):
        for j in range(n):
            d[i, j] = gamma[j] * inv[j] * inv_m * (mf * d[i, j] - dbeta[j] - xh[i, j] * dgamma[j])


# Sums along a row (LayerNorm, GroupNorm, the softmax) vectorize only when their order may
# change: these kernels allow reassociation, which moves results by rounding only.
_REASSOC = {"reassoc", "nsz"}


@nb.njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _groupnorm(x, gamma, beta, groups, eps, xh, y, mu, inv):
    """Per example and group of consecutive units: normalize, then per-unit gamma, beta.
    (Inner loops run over range(size) on row views: the form LLVM vectorizes.)"""
    m, d = x.shape
    size = d // groups
    for i in range(m):
        xi, hi, yi = x[i], xh[i], y[i]
        for g in range(groups):
            lo = g * size
            s = 0.0
            for jj in range(size):
                s += xi[lo + jj]
            mean = s / size
            v = 0.0
            for jj in range(size):
                c = xi[lo + jj] - mean
                v += c * c
            r = 1.0 / math.sqrt(v / size + eps)
            mu[i * groups + g] = mean
            inv[i * groups + g] = r
            for jj in range(size):
                j = lo + jj
                hi[j] = (xi[j] - mean) * r
                yi[j] = gamma[j] * hi[j] + beta[j]


@nb.njit(cache=True, error_model="numpy", fastmath=_REASSOC)
def _groupnorm_backward(d, xh, gamma, groups, inv, dgamma, dbeta):
    m, n = d.shape
    size = n // groups
    for j in range(n):
        dgamma[j] = 0
        dbeta[j] = 0
    for i in range(m):
        di, hi = d[i], xh[i]
        for j in range(n):
            dbeta[j] += di[j]
            dgamma[j] += di[j] * hi[j]
        for g in range(groups):
            lo = g * size
            s, sx = 0.0, 0.0
            for jj in range(size):
                gj = di[lo + jj] * gamma[lo + jj]
                s += gj
                sx += gj * hi[lo + jj]
            r = inv[i * groups + g] / size
            for jj in range(size):
                j = lo + jj
                di[j] = r * (size * (di[j] * gamma[j]) - s - hi[j] * sx)


@nb.njit(cache=True, error_model="numpy")
def _noise(x, keys, step, consts, out, scale):
    """Noisy BN's a <- s a + m with the draws of ``functional.noise_draws``. The normal
    quantile's central formula runs on every draw (it vectorizes), its tails (< 5% of draws)
    are redone afterwards, in a kernel of their own (together LLVM keeps both scalar)."""
    m, d = x.shape
    n_mu, n_sigma, r_mu, r_sigma = consts[0], consts[1], consts[2], consts[3]
    mu_t, sigma_t = np.empty(d), np.empty(d)
    for j in range(d):
        u_mu, u_sigma = _pair(keys[0], step * d + j)
        mu_t[j] = n_mu * (2.0 * u_mu - 1.0)
        sigma_t[j] = 1.0 + (n_sigma - 1.0) * u_sigma
    v_s = np.empty((m, d))
    _noise_central(x, keys[1], step * m * d, mu_t, sigma_t, r_mu, r_sigma, out, scale, v_s)
    _noise_tails(x, keys[1], step * m * d, mu_t, sigma_t, r_mu, r_sigma, out, scale, v_s)


@nb.njit(cache=True, error_model="numpy")
def _noise_shift(x, keys, step, consts, out):
    """Probe mode's noise: the step's per-unit a <- sigma_t a + mu_t only."""
    m, d = x.shape
    n_mu, n_sigma = consts[0], consts[1]
    for j in range(d):
        u_mu, u_sigma = _pair(keys[0], step * d + j)
        mu_t = x.dtype.type(n_mu * (2.0 * u_mu - 1.0))
        sigma_t = x.dtype.type(1.0 + (n_sigma - 1.0) * u_sigma)
        for i in range(m):
            out[i, j] = sigma_t * x[i, j] + mu_t


@nb.njit(cache=True, error_model="numpy")
def _noise_central(x, key, base, mu_t, sigma_t, r_mu, r_sigma, out, scale, v_s):
    """Every draw with the quantile's central formula; keeps each v_s for ``_noise_tails``."""
    m, d = x.shape
    for i in range(m):
        for j in range(d):
            v_m, v = _pair(key, base + i * d + j)
            v_s[i, j] = v
            s = x.dtype.type(sigma_t[j] + r_sigma * _central_quantile(v))
            scale[i, j] = s
            out[i, j] = s * x[i, j] + x.dtype.type(mu_t[j] + r_mu * (2.0 * v_m - 1.0))


@nb.njit(cache=True, error_model="numpy")
def _noise_tails(x, key, base, mu_t, sigma_t, r_mu, r_sigma, out, scale, v_s):
    """The draws whose v_s lies in the quantile's tails, redone with the tail formula."""
    m, d = x.shape
    low = 0.02425
    for i in range(m):
        for j in range(d):
            v = v_s[i, j]
            if v < low or v > 1.0 - low:
                v_m, _ = _pair(key, base + i * d + j)
                s = x.dtype.type(sigma_t[j] + r_sigma * _normal_quantile(v))
                scale[i, j] = s
                out[i, j] = s * x[i, j] + x.dtype.type(mu_t[j] + r_mu * (2.0 * v_m - 1.0))


@nb.njit(cache=True, error_model="numpy")
def _dropout(x, key, step, p_drop, out, mask):
    m, d = x.shape
    keep = 1.0 - p_drop
    kept = x.dtype.type(1) / x.dtype.type(keep)
    for i in range(m):
        for j in range(d):
            u, _ = _pair(key, step * m * d + i * d + j)
            mask[i, j] = kept if u < keep else 0
            out[i, j] = x[i, j] * mask[i, j]


@nb.njit(cache=True, error_model="numpy")
def _softmax_cross_entropy(z, y, rows):
    """Mean cross-entropy of the logits z (m, C) for labels y[rows]; z becomes dL/dz."""
    m, c = z.shape
    total = 0.0
    for i in range(m):
        label = y[rows[i]]
        top = z[i, 0]
        for j in range(1, c):
            if z[i, j] > top:
                top = z[i, j]
        picked = z[i, label] - top
        s = z.dtype.type(0)
        for j in range(c):
            e = math.exp(z[i, j] - top)
            z[i, j] = e
            s += e
        total += math.log(s) - picked
        for j in range(c):
            z[i, j] = z[i, j] / s / m
        z[i, label] -= z.dtype.type(1.0 / m)
    return total / m


# --------------------------------------------------------------------------- one net, one step


@nb.njit(cache=True, error_model="numpy")
def _forward(k, P, R, B, H, OUT, X, Y, rows, step, act, norm, after, eps, f_stats,
             noise_consts, noise_keys, drop_p, drop_keys, mode=TRAIN):  # fmt: skip
    """Run k's forward on the rows ``rows`` of X at ``step``.

    TRAIN: BN with batch statistics, its running ones advanced by ``f_stats`` (0: left
    alone), noise and dropout of the step; returns the loss and leaves dL/dlogits in the
    logits buffer. PROBE (``nn.MLP.probe_mode``): batch statistics, nothing advanced, the
    noise's per-unit shift and scale of the last step, no dropout. EVAL: running statistics,
    no noise, no dropout. PROBE and EVAL leave the logits in their buffer and return 0."""
    m = rows.shape[0]
    n_in = OUT[O_NIN]
    xb = _view(B, k, OUT[O_XB], m, n_in)
    for i in range(m):
        for j in range(n_in):
            xb[i, j] = X[rows[i], j]
    h = xb
    for li in range(H.shape[0]):
        row = H[li]
        d_in, d = row[C_IN], row[C_OUT]
        w = _view(P, k, row[C_W], d, d_in)
        z = _view(B, k, row[C_Z], m, d)
        np.dot(h, w.T, z)
        if row[C_B] >= 0:
            b = _vec(P, k, row[C_B], d)
            for i in range(m):
                for j in range(d):
                    z[i, j] += b[j]
        cur = z
        if norm != NONE and after:
            a = _view(B, k, row[C_A], m, d)
            _activate(act, cur, a)
            cur = a
        if norm != NONE:
            gamma, beta = _vec(P, k, row[C_GAMMA], d), _vec(P, k, row[C_BETA], d)
            xh, y = _view(B, k, row[C_XH], m, d), _view(B, k, row[C_N], m, d)
            n_stats = d if norm == BATCH else m * row[C_GROUPS]
            mu, inv = _vec(B, k, row[C_MU], n_stats), _vec(B, k, row[C_INV], n_stats)
            if norm == BATCH and mode == EVAL:
                rm, rv = _vec(R, k, row[C_RM], d), _vec(R, k, row[C_RV], d)
                for j in range(d):  # the inference transform's per-unit scale
                    inv[j] = gamma[j] / math.sqrt(rv[j] + eps)
                for i in range(m):
                    for j in range(d):
                        y[i, j] = (cur[i, j] - rm[j]) * inv[j] + beta[j]
            elif norm == BATCH:
                var = _vec(B, k, row[C_VAR], n_stats)
                _batchnorm(cur, gamma, beta, eps, xh, y, mu, var, inv)
                if f_stats > 0 and mode == TRAIN:
                    rm, rv = _vec(R, k, row[C_RM], d), _vec(R, k, row[C_RV], d)
                    for j in range(d):
                        rm[j] = (1.0 - f_stats) * rm[j] + f_stats * mu[j]
                        rv[j] = (1.0 - f_stats) * rv[j] + f_stats * (var[j] * m / (m - 1))
            else:
                _groupnorm(cur, gamma, beta, row[C_GROUPS], eps, xh, y, mu, inv)
            cur = y
        if row[C_NOISE] and mode != EVAL:
            ns, sc = _view(B, k, row[C_NS], m, d), _view(B, k, row[C_SC], m, d)
            if mode == TRAIN:
                _noise(cur, noise_keys[k, li], step, noise_consts, ns, sc)
            else:
                _noise_shift(cur, noise_keys[k, li], max(step - 1, 0), noise_consts, ns)
            cur = ns
        if not (norm != NONE and after):
            a = _view(B, k, row[C_A], m, d)
            _activate(act, cur, a)
            cur = a
        if row[C_DROP] and mode == TRAIN:
            do, mk = _view(B, k, row[C_DO], m, d), _view(B, k, row[C_MK], m, d)
            _dropout(cur, drop_keys[k, li], step, drop_p, do, mk)
            cur = do
        h = cur
    c = OUT[O_C]
    w = _view(P, k, OUT[O_W], c, OUT[O_IN])
    logits = _view(B, k, OUT[O_LOGITS], m, c)
    np.dot(h, w.T, logits)
    b = _vec(P, k, OUT[O_B], c)
    for i in range(m):
        for j in range(c):
            logits[i, j] += b[j]
    if mode != TRAIN:
        return 0.0
    return _softmax_cross_entropy(logits, Y, rows)


@nb.njit(cache=True, error_model="numpy")
def _column_sums(d, out):
    m, n = d.shape
    for j in range(n):
        out[j] = 0
    for i in range(m):
        for j in range(n):
            out[j] += d[i, j]


@nb.njit(cache=True, error_model="numpy")
def _backward(k, P, G, B, H, OUT, m, act, norm, after):
    """Run k's gradients into row k of G, from the last forward's buffers."""
    c, n_last = OUT[O_C], OUT[O_IN]
    dlogits = _view(B, k, OUT[O_LOGITS], m, c)
    last = H[H.shape[0] - 1]
    h_last = _view(B, k, last[C_BO], m, n_last)
    np.dot(dlogits.T, h_last, _view(G, k, OUT[O_W], c, n_last))
    _column_sums(dlogits, _vec(G, k, OUT[O_B], c))
    d = _view(B, k, last[C_D], m, n_last)
    np.dot(dlogits, _view(P, k, OUT[O_W], c, n_last), d)
    for li in range(H.shape[0] - 1, -1, -1):
        row = H[li]
        d_in, n = row[C_IN], row[C_OUT]
        d = _view(B, k, row[C_D], m, n)
        if row[C_DROP]:
            mk = _view(B, k, row[C_MK], m, n)
            for i in range(m):
                for j in range(n):
                    d[i, j] *= mk[i, j]
        a = _view(B, k, row[C_A], m, n)
        if not (norm != NONE and after):
            _activation_grad(act, a, d)
        if row[C_NOISE]:
            sc = _view(B, k, row[C_SC], m, n)
            for i in range(m):
                for j in range(n):
                    d[i, j] *= sc[i, j]
        if norm != NONE:
            gamma = _vec(P, k, row[C_GAMMA], n)
            dgamma, dbeta = _vec(G, k, row[C_GAMMA], n), _vec(G, k, row[C_BETA], n)
            xh = _view(B, k, row[C_XH], m, n)
            n_stats = n if norm == BATCH else m * row[C_GROUPS]
            inv = _vec(B, k, row[C_INV], n_stats)
            if norm == BATCH:
                _batchnorm_backward(d, xh, gamma, inv, dgamma, dbeta)
            else:
                _groupnorm_backward(d, xh, gamma, row[C_GROUPS], inv, dgamma, dbeta)
        if norm != NONE and after:
            _activation_grad(act, a, d)
        if li > 0:
            h = _view(B, k, H[li - 1, C_BO], m, d_in)
        else:
            h = _view(B, k, OUT[O_XB], m, d_in)
        np.dot(d.T, h, _view(G, k, row[C_W], n, d_in))
        if row[C_B] >= 0:
            _column_sums(d, _vec(G, k, row[C_B], n))
        if li > 0:
            np.dot(d, _view(P, k, row[C_W], n, d_in), _view(B, k, H[li - 1, C_D], m, d_in))


@nb.njit(cache=True, error_model="numpy")
def _sgd(k, P, G, V, lr, momentum, weight_decay, first):
    """``torch.optim.SGD`` (dampening 0) on row k: g += wd p; v = g at first, else
    v = momentum v + g; p -= lr v."""
    p, g, v = P[k], G[k], V[k]
    wd = p.dtype.type(weight_decay)
    mom = p.dtype.type(momentum)
    rate = p.dtype.type(lr)
    n = p.shape[0]
    if momentum == 0 and weight_decay == 0:
        for i in range(n):
            p[i] -= rate * g[i]
        return
    for i in range(n):
        gi = g[i] + wd * p[i]
        if momentum != 0:
            gi = gi if first else mom * v[i] + gi
            v[i] = gi
        p[i] -= rate * gi


@nb.njit(cache=True, error_model="numpy")
def steps(n, t0, P, G, V, R, B, H, OUT, X, Y, idx, lrs, momentum, weight_decay, active,
          limit, losses, diverged_at, act, norm, after, eps, bn_momentum, noise_consts,
          noise_keys, drop_p, drop_keys, update, threshold):  # fmt: skip
    """n steps (t0, ..., t0 + n - 1) of every active run: forward (BN statistics advance),
    the divergence rule, backward and, with ``update``, the SGD step. ``idx`` (n, K, m) are
    the batches, ``lrs`` (n, K) the rates. A run whose loss is not finite or exceeds
    ``threshold`` times max(its first loss, 1) stops at that step: ``diverged_at[k] = t``,
    ``active[k] = 0``, its loss is NaN and nothing of it moves after that forward. Returns the
    number of steps taken (n, or fewer once no run is active)."""
    m = idx.shape[2]
    for s in range(n):
        t = t0 + s
        f_stats = bn_momentum if bn_momentum > 0 else 1.0 / (t + 1)
        alive = 0
        for k in range(P.shape[0]):
            if not active[k]:
                losses[s, k] = np.nan
                continue
            loss = _forward(k, P, R, B, H, OUT, X, Y, idx[s, k], t, act, norm, after, eps,
                            f_stats, noise_consts, noise_keys, drop_p, drop_keys)  # fmt: skip
            if limit[k] < 0 and math.isfinite(loss):
                limit[k] = threshold * max(loss, 1.0)
            if not loss <= (limit[k] if limit[k] > 0 else np.inf):
                diverged_at[k] = t
                active[k] = 0
                losses[s, k] = np.nan
                continue
            losses[s, k] = loss
            alive += 1
            _backward(k, P, G, B, H, OUT, m, act, norm, after)
            if update:
                _sgd(k, P, G, V, lrs[s, k], momentum[k], weight_decay[k], t == 0)
        if alive == 0:
            return s + 1
    return n


@nb.njit(cache=True, error_model="numpy")
def sgd(t, P, G, V, lrs, momentum, weight_decay, active):
    """The SGD step of every active run, for a step whose gradients ``steps`` left in G."""
    for k in range(P.shape[0]):
        if active[k]:
            _sgd(k, P, G, V, lrs[k], momentum[k], weight_decay[k], t == 0)


@nb.njit(cache=True, error_model="numpy")
def forward_only(k, P, R, B, H, OUT, X, Y, rows, step, act, norm, after, eps,
                 noise_consts, noise_keys, drop_p, drop_keys, mode):  # fmt: skip
    """One run's forward in a mode (TRAIN: its loss, statistics left alone; PROBE, EVAL: the
    logits in the buffer): what the recorder measures, and the tests."""
    return _forward(k, P, R, B, H, OUT, X, Y, rows, step, act, norm, after, eps, 0.0,
                    noise_consts, noise_keys, drop_p, drop_keys, mode)  # fmt: skip
