"""Views of a show/preview report: terminal (`text`), JSON (`data`) and a self-contained page (`html`)."""
