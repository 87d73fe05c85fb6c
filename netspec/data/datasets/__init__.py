"""One module per dataset: its record (netspec.data.record) and its reader. The modules
import nothing heavy; `netspec.data.registry` lists their records in order."""
