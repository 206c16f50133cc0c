"""One module per data-set layout; each becomes data.tables' one table."""
