"""On-device measurement: torch builders for the spaces, a timing harness, FLOPs, onboarding."""
