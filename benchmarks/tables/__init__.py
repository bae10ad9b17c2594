"""The paper tables: one module per table (plan the runs it needs, build it), the registry, rendering."""
