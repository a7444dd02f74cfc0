"""Benchmarks of larsr against bicubic and two peers (Real-ESRGAN x4plus, DAT-light).

Nothing here is a larsr dependency: the peers live in their own virtual environments
(``benchmarks/setup_peers.sh``) and are driven as subprocesses, so their pins (numpy<2, pillow<11,
torch) never touch the product's environment. Run the scripts as modules from the repository root:
``python -m benchmarks.quality``, ``python -m benchmarks.speed``, ``python -m benchmarks.report``.
"""
