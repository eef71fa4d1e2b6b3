#!/usr/bin/env python3
"""Export a JKO operator trained in PyTorch as a TorchScript module that
Neural JKO Flow loads (`jko eval --solver learned --operator op.pt`, or the
ParaView filter's operator file).

The contract:
* forward(features) takes float32 features of shape (batch, C, n0, n1[, n2])
  on the operator's network grid (at most network.grid nodes per axis; the
  density is averaged onto it) with the channels, in this order:
    density / scales.density                                   1 channel
    explicit velocity -grad(dE/drho) / scales.velocity         dim channels
    smoothed velocity (resolvent of the internal part)         dim channels
    normalised coordinates (x - box lower) / box length        dim channels
    V / scales.potential                  (only with a potential) 1 channel
* it returns the velocity divided by scales.velocity, shape
  (batch, dim, n0, n1[, n2]); the engine moves the (pre-filtered) mass of
  every node by tau * velocity with the quadratic B-spline deposit.
* the operator metadata (the JSON of a .jko file: dim, energy, tau, network,
  scales, ranges) is stored as the extra file "jko_metadata.json".

This example exports a module that returns the smoothed velocity itself, i.e.
the untrained operator of the C++ trainer, for the porous medium m = 2.
"""
import argparse
import json

import torch


class SmoothedVelocityOperator(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        # A learnable scale, as a trained network would have parameters.
        self.gain = torch.nn.Parameter(torch.ones(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        smoothed = features[:, 1 + self.dim:1 + 2 * self.dim]
        return self.gain * smoothed


def metadata(dim: int) -> dict:
    return {
        "dim": dim,
        "tau": 0.005,
        "energy": {
            "preset": "porous-medium",
            "internal": {"kind": "porous-medium", "D": 1.0, "m": 2.0, "log_floor": 1e-12},
            "potential": {"kind": "none", "strength": [1, 1, 1], "centre": [None, None, None],
                          "well_depth": 1.0, "well_half_width": 0.25, "values_hash": ""},
            "kernel": {"kind": "none", "attraction": 1.0, "repulsion": 1.0,
                       "attractive_power": 2.0, "repulsive_power": 0.0},
        },
        "network": {"kind": "torchscript", "grid": 32},
        # velocity: the unit of the module's output; diffusivity: kappa of the
        # smoothed-velocity feature, D m peak^(m-1).
        "scales": {"density": 0.3, "velocity": 1.0, "potential": 1.0, "diffusivity": 1.2, "cap_cells": 4},
        "ranges": {"box_length": [1, 1, 1], "grid_min": 64, "grid_max": 64,
                   "mass_min": 0.0, "mass_max": 0.0, "peak_min": 0.05, "peak_max": 0.6},
        "training": {"mode": "python example"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="smoothed_velocity_operator.pt")
    parser.add_argument("--dim", type=int, default=2, choices=(2, 3))
    args = parser.parse_args()
    module = torch.jit.script(SmoothedVelocityOperator(args.dim))
    torch.jit.save(module, args.out, _extra_files={"jko_metadata.json": json.dumps(metadata(args.dim))})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
