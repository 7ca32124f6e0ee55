"""Importers for measured data, predicted-vs-measured comparison, error reports and calibration."""
