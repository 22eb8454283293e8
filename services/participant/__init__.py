"""The participant: an organization's agent that trains on local data it never shares."""
