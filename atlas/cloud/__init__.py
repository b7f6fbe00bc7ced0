"""The cloud parts beside the order path: provisioning and verifying what ATLAS needs in AWS."""
