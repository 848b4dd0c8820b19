"""Remove what the chosen kinds do not use: the data source module when the connector moves no
rows on the executors."""

from pathlib import Path

kinds = {k.strip() for k in "{{ cookiecutter.kinds }}".split(",") if k.strip()}
package = Path("src") / "{{ cookiecutter.__package }}"
if not kinds & {"extractor", "loader"}:
    (package / "datasource.py").unlink()
