import sys
def main(argv=None):
    print("latchnic")
    return 0
