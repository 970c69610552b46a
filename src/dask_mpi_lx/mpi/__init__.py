"""Everything that touches MPI: the environment MPI launchers set, and the polling channel."""
