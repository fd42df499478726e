"""Where a worker's first seconds on a GPU go (issue 13: each worker pays them once): the CUDA
context, the first convolution (cuDNN), the first matrix product (cuBLAS), the model's load, and
its first and second calls on 16 frames of 720p. Run it in a fresh process:

    PYTHONPATH=. python3 benchmarks/startup_gpu.py
"""

import time

t0 = time.perf_counter()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

marks = [("import torch", time.perf_counter() - t0)]


def mark(name: str, fn) -> None:
    began = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    marks.append((name, time.perf_counter() - began))


dev = torch.device("cuda")
mark("CUDA context", lambda: torch.zeros(1, device=dev))
x = torch.randn(1, 96, 64, 64, device=dev, dtype=torch.bfloat16)
w = torch.randn(96, 96, 3, 3, device=dev, dtype=torch.bfloat16)
mark("first convolution (cuDNN)", lambda: F.conv2d(x, w, padding=1))
mark("first matrix product (cuBLAS)", lambda: x.flatten(2) @ x.flatten(2).transpose(1, 2))
model = []


def load() -> None:
    from skipsr_cli.weights import load_model

    model.append(load_model(device=dev, dtype=torch.bfloat16))


mark("load base", load)
lr = torch.rand(1, 3, 16, 720, 1280, device=dev)
with torch.inference_mode():
    mark("first call, 16 frames 720p -> 1440p", lambda: model[0](lr, (1440, 2560)))
    mark("second call", lambda: model[0](lr, (1440, 2560)))
for name, seconds in marks:
    print(f"{name:40s} {seconds:7.3f} s")
