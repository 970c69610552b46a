"""The client side: MPICluster, a distributed Cluster for an MPI job."""
