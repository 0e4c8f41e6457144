"""Every write in the kernel is a service here: one function per use case, transactional and
audited. Import from the submodules (`plum.services.audit`, ...)."""
