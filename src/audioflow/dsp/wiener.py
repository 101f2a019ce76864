"""Multichannel Wiener filtering of source estimates: the post-processing of Spleeter and Open-Unmix
(Nugraha, Liutkus and Vincent, "Multichannel audio source separation with deep neural networks", 2016), on
torch tensors, batched over time, any device."""

from __future__ import annotations

import torch

from ..errors import ParameterError


def soft_mask(mix: torch.Tensor, magnitudes: torch.Tensor, power: float = 2.0, eps: float = 1e-10) -> torch.Tensor:
    """Each source's share of the mixture STFT: ``mix * |s_j|^p / sum_k |s_k|^p``.

    Args:
        mix: complex mixture STFT ``[channels, bins, frames]``.
        magnitudes: non-negative source magnitude estimates ``[sources, channels, bins, frames]``.
        power: the mask exponent (2: Spleeter's, a Wiener-like ratio of powers; 1: a ratio of magnitudes).

    Returns:
        Complex source STFTs ``[sources, channels, bins, frames]`` that add up to ``mix``.
    """
    weights = magnitudes if power == 1 else magnitudes.pow(power)
    return mix.unsqueeze(0) * ((weights + eps / len(weights)) / (weights.sum(0, keepdim=True) + eps))


def wiener(mix: torch.Tensor, magnitudes: torch.Tensor, iterations: int = 1, power: float = 2.0,
           eps: float = 1e-10, batch_frames: int = 256) -> torch.Tensor:
    """Source STFTs by expectation-maximisation of a local Gaussian model (norbert's ``wiener``): start
    from :func:`soft_mask`, then each iteration re-estimates every source's power spectral density and
    spatial covariance (a ``channels x channels`` matrix per frequency) and applies the multichannel Wiener
    gain ``v_j R_j (sum_k v_k R_k)^-1`` to the mixture.

    Args:
        mix: complex mixture STFT ``[channels, bins, frames]``.
        magnitudes: non-negative source magnitude estimates ``[sources, channels, bins, frames]``.
        iterations: EM iterations (0: the soft mask alone; 1-2 usual).
        power: exponent of the initial soft mask.
        batch_frames: frames per step of the E-step (bounds the memory of the covariance inverses).

    Returns:
        Complex source STFTs ``[sources, channels, bins, frames]``.
    """
    if iterations < 0:
        raise ParameterError(f"iterations must be >= 0, got {iterations}")
    if mix.dim() != 3 or magnitudes.dim() != 4 or magnitudes.shape[1:] != mix.shape:
        raise ParameterError(f"mix [C, F, T] and magnitudes [J, C, F, T] must agree, got {tuple(mix.shape)} and "
                             f"{tuple(magnitudes.shape)}")
    # the model works best with values of order one (norbert's scale_factor): rescaled, then scaled back
    scale = max(1.0, float(mix.abs().max()) / 10.0)
    mix = mix / scale
    sources = soft_mask(mix, magnitudes / scale, power, eps)
    channels = mix.shape[0]
    # a source the same in every channel (a mono voice in a stereo mix) has a singular spatial covariance: the
    # mixture's is regularised (norbert's sqrt(eps) x I) and inverted in double precision
    eye = torch.eye(channels, dtype=torch.complex128, device=mix.device) * eps ** 0.5
    for _ in range(iterations):
        psd = sources.abs().pow(2).mean(1)  # [J, F, T]
        # spatial covariance per source and frequency, normalised by its power: [J, F, C, C]
        outer = torch.einsum("jcft,jdft->jfcd", sources, sources.conj())
        covariance = (outer / (eps + psd.sum(-1))[..., None, None]).to(torch.complex128)
        for start in range(0, mix.shape[-1], batch_frames):
            stop = min(start + batch_frames, mix.shape[-1])
            v = psd[:, :, start:stop].to(torch.float64)  # [J, F, t]
            inverse = _inverse(torch.einsum("jft,jfcd->ftcd", v.to(torch.complex128), covariance) + eye)
            x = mix[:, :, start:stop].permute(1, 2, 0).to(torch.complex128)  # [F, t, C]
            whitened = torch.einsum("ftcd,ftd->ftc", inverse, x)
            for j in range(len(sources)):
                gain_x = torch.einsum("fcd,ftd->ftc", covariance[j], whitened) * v[j][..., None]
                sources[j, :, :, start:stop] = gain_x.permute(2, 0, 1).to(sources.dtype)
    return sources * scale


def _inverse(matrices: torch.Tensor) -> torch.Tensor:
    """Inverses of ``[..., C, C]`` matrices (closed form for one and two channels, the usual cases)."""
    if matrices.shape[-1] == 1:
        return 1.0 / matrices
    if matrices.shape[-1] == 2:
        a, b = matrices[..., 0, 0], matrices[..., 0, 1]
        c, d = matrices[..., 1, 0], matrices[..., 1, 1]
        det = a * d - b * c
        return torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[..., None, None]
    return torch.linalg.inv(matrices)
