"""Charges out to the hospital's billing system: the chargemaster extract (chargemaster.py) and the
HL7 v2 DFT^P03 translation of charge records (dft.py). Pure, at the feeds' layer; the live sender is
gateways/billing.py, the offline export cli/billing.py."""
