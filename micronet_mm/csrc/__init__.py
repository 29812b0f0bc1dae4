"""C++ sources of the fused operators (header-only kernels, torch binding) and their build."""
