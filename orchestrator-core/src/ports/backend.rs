//! The `ContainerBackend` port: what every container runtime adapter offers.
