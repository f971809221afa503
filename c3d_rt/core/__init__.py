"""The C3D contract and the leaves everything stands on: configs, the one preprocessing, camera motion, errors,
the console, atomic files, machine facts, the version.

Imports nothing else of c3d_rt. Torch-free (OpenCV and NumPy).
"""
