"""bastion.backends"""
