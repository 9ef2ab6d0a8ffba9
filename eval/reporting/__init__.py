"""Reports over run and evaluation folders: result collection, tables and figures, checkpoint comparison."""
