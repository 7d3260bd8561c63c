"""The end-to-end recipe: stages chained with their ablation arms."""
