"""The pure coding engine: administrations in, charge lines and alerts out. No Kafka here."""
