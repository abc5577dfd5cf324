#!/usr/bin/env nu
# Installs kubernetes 1.28.0
def main [] { print "installing kubernetes 1.28.0" }
