"""Files generated from hw/regmap.py (python -m latchnic.hw.regmap --write)."""
