"""Digital twin: a graph of sites, buildings, storeys, spaces, zones, IFC elements and registry devices, kept in
the platform's SQL database, imported from IFC files (IfcOpenShell)."""
