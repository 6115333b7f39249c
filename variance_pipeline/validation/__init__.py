"""pandera schemas, one module per dataset, and the shared way of applying them."""
