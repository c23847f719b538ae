"""On-device measurement: torch builders for the spaces, a timing harness, FLOPs, onboarding."""

from client_sdk._extras import require

require("measure", "client_sdk.measure (on-device measurement)", "torch", "tqdm")

