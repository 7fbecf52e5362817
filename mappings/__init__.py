"""The default mapping files, shipped as data: one TOML file per system (`crm.toml`, `erp.toml`, ...).

The engine that reads them is `hub.core.mapping`; the loader and validator, `hub.mapping_files`.
"""

from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent
