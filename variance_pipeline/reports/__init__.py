"""What people read, drawn from the warehouse only: charts (and the evening report)."""
