"""test.py, assess_model.py and compare.py: a trained model (or every detector) measured on labelled rows."""
