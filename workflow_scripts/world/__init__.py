"""The demo world: a seeded generator of instruction tasks with a programmatic gold reward, and the
builders (tokenizer, SFT model, reward model) that make an offline ExPO experiment from it."""
