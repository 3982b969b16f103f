"""`python -m mgvm.datasets.synthetic --out DIR`: writes the synthetic set (`write.main`)."""

from mgvm.datasets.synthetic.write import main

main()
