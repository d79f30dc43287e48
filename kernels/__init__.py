"""Fast WaveNet inference kernels: numba CPU, persistent CUDA, and their dispatch."""
