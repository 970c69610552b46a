"""Clusters that run as MPI batch jobs of their own: `MPIJobCluster` and bursting."""
