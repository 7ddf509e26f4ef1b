"""The domain: shops, reviews and photos, and how shops are ranked. No HTTP and no storage here."""
