"""How ATLAS runs on Faust and Kafka: corrections to Faust, the command producer, partitioning, reference data."""
