"""What a supervisor tells the rest of the host about its groups, and what
it watches in them: state files (`governor ps`, `governor top`, the console),
CPU caps, Prometheus metrics, shared memory for memory_resident."""
