"""Training: contrastive heads training (LiT) over cached frozen features, and collection fine-tuning."""
