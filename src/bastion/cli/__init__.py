"""bastion.cli"""
