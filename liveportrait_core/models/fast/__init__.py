"""The CPU's (and CUDA's) faster exact forms of the plain networks, applied once after loading."""
