"""The lowest layer: small helpers every other layer may use (installed packages and their versions,
the CPUs this process may run on, atomic file writes, the package version, stdout kept for a JSON
document). Imports nothing of ours but :mod:`ipex_resnet.errors`."""
