"""PyTorch twins of bnviz's nets and engines: the parity checks' other side, and a torch
engine that runs on CUDA where there is one. torch is imported only when these run."""
