"""Simulated photos of Fashion-MNIST garments, rendered from the 28×28 crops with a seed.

`photolike` is the shop's product photo (the dataset's recipe run backwards), `bedsheet`,
`home_photos` and `scenes` the snapshots people take of their own clothes at home, and
`photo_styles` the family of styles by name with the score of a model on each. The
benchmarks, the report's robustness section and the tests draw their photos from here;
numpy and Pillow only, beside the contract's preprocessing that reads them back.
"""
