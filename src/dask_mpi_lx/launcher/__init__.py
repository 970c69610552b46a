"""The daemon side: turn the ranks of one MPI job into a notebook, a scheduler and workers."""
