"""Losses of the CAST objective: set criterion (L_sup, L_semi) and pixel contrast (L_pxl)."""
